"""Character language models: the training loop, the recipe, the run folder and checkpoint
layout, scoring, sampling, and data-parallel training under MPI."""
