"""The classifiers: their architectures, their training, their calibration and the `Ensemble` that
runs them for inference.

Training (`tagger train`) starts at `tagger.model.train.train_ensemble`, which runs its stages in
order; each stage's code lives with its concern:

- `tagger.model.examples`: the notes, note pools, training examples and validation sets, cached;
- `tagger.model.plan`: the model folder trained into and what the run must train there;
- `tagger.model.joint`, `tagger.model.augment`: the graph trained (losses, schedule) and the
  augmentations of its batches; the epochs, checkpoints and resuming stay in `tagger.model.train`;
- `tagger.model.record`: the heads, the presence gate and the run saved and recorded in the manifest.

Inference reads a model folder through `tagger.model.ensemble.Ensemble` and the backends of
`tagger.model.backends`; the folder's manifest is read and written by `tagger.model.manifest`, its
files verified by `tagger.model.verify`, and `tagger.model.folders` knows where model folders are.
Importing this package imports none of its modules.
"""
