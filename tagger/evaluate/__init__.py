"""Evaluation: metrics as the paper defines them, the solo and polyphony protocols, reports and plots."""
