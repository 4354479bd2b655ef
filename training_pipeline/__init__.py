"""The training pipeline's request contract, state machine definition and launcher CLI."""
