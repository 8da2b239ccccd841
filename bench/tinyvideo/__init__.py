"""A tiny video diffusion model trained on synthetic clips: the project's fidelity instrument."""
