"""fastadl: a fast, faithful Auto-DeepLab (hierarchical NAS for semantic segmentation)."""

from setuptools import find_packages, setup

setup(
    name="fastadl",
    version="0.1.0",
    description="Fast, faithful Auto-DeepLab: cell + network-level architecture search for segmentation",
    python_requires=">=3.10",
    packages=find_packages(include=["fastadl", "fastadl.*"]),
    package_data={"fastadl.kernels.cpu": ["*.cpp", "*.h"]},  # built at first use
    install_requires=[
        "torch>=2.4",
        # the kernels read triton.knobs (TRITON_INTERPRET), new in 3.4; CUDA builds of torch pin
        # their Triton, so on CUDA this means torch >= 2.8 (2.7 pins 3.3)
        "triton>=3.4",
        "numpy>=1.24",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pillow>=9.0",
        "cityscapesscripts>=2.2",
        "nvidia-ml-py>=12.0",
        "safetensors>=0.4",  # model folders' weights (fastadl/deploy/pretrained.py)
        # event files in every run directory (torch.utils.tensorboard needs it; --no-tensorboard)
        "tensorboard>=2.14",
    ],
    extras_require={
        "test": [
            "pytest>=7.4",
            "pytest-benchmark>=4.0",
            "torchmetrics>=1.0",
            "scipy>=1.10",  # an independent check of fastadl.study.stats
            "ruff>=0.5",
            # export: python -m fastadl.export --format onnx, checked with onnxruntime
            "onnx>=1.16",
            "onnxscript>=0.2",
            "onnxruntime>=1.18",
        ],
        "onnx": ["onnx>=1.16", "onnxscript>=0.2"],  # python -m fastadl.export --format onnx
    },
)
