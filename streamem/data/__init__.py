"""Where data lives and how it is read and written: storage locations, file formats and
readers, generated data, the model store and checkpoints."""
