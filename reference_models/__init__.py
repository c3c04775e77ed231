"""Reference looped (recurrent-depth) transformers: model, training, kernels, evaluator adapter."""
