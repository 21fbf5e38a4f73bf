"""seesaw-ds: Seesaw batch-size scheduling for DeepSpeed and Megatron."""

__version__ = "0.1.0"

__all__ = ["initialize", "__version__"]


def initialize(*args, **kwargs):
    """``deepspeed.initialize`` with the config's Seesaw plan; see
    :func:`seesaw_ds.deepspeed_adapter.initialize` (imported lazily: ``import seesaw_ds``
    pulls in neither torch nor deepspeed)."""
    from seesaw_ds.deepspeed_adapter import initialize as _initialize

    return _initialize(*args, **kwargs)
