"""seesaw-ds: Seesaw batch-size scheduling for DeepSpeed and Megatron."""

__version__ = "0.1.0"
