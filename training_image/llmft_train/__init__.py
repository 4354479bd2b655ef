"""SageMaker and Slurm entrypoint that turns a training job's inputs into a LLaMA-Factory run."""

__version__ = "0.1.0"
