"""The plain-PyTorch GPT used for Seesaw runs, and its named shapes."""

from seesaw_ds.model.gpt import GPT, GPTConfig, LMOutput, count_parameters
from seesaw_ds.model.shapes import SHAPES, build_model, model_config

__all__ = ["GPT", "GPTConfig", "LMOutput", "count_parameters", "SHAPES", "build_model",
           "model_config"]
