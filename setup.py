import re

from setuptools import find_packages, setup

# one version: seesaw_ds/__init__.py's (`seesaw-ds --version` reads it back from the metadata)
with open("seesaw_ds/__init__.py", encoding="utf-8") as handle:
    VERSION = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)

setup(
    name="seesaw-ds",
    version=VERSION,
    description="Seesaw batch-size scheduling (LR decay -> batch growth) for DeepSpeed and Megatron",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["seesaw_ds", "seesaw_ds.*"]),
    # example configs: seesaw_ds/configs -> ds_configs, seesaw_ds/run_configs ->
    # launch/run_configs (symbolic links in the repository; real files in the wheel)
    package_data={"seesaw_ds": ["configs/*.json", "run_configs/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        # torch is pinned by the README/CI install step (CPU wheel) before this runs.
        "torch>=2.1",
        "deepspeed>=0.16",
        "megatron-core>=0.12",
        "sentencepiece>=0.2",
        "pyyaml>=6",
        "numpy",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest", "hypothesis", "tensorboard", "transformers>=5", "accelerate>=1.0",
                 "zstandard"],
        # seesaw-ds prepare reads .zst inputs in place (.gz and .bz2 need nothing extra)
        "zstd": ["zstandard"],
        "tensorboard": ["tensorboard"],
        # seesaw_ds.integrations.hf_trainer (SeesawTrainer); tested with transformers 5.25.0
        # and accelerate 1.16.0 (what pip resolves beside torch 2.13.0)
        "hf": ["transformers>=5", "accelerate>=1.0"],
    },
    entry_points={"console_scripts": ["seesaw-ds=seesaw_ds.cli.main:main"]},
)
