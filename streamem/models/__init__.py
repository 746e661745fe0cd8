"""The estimators, each a thin shell over a model object that the EM loop runs; the
selection of the number of components; export to ONNX."""
