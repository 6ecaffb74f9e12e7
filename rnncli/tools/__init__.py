"""Tools around the models: gradient checking, benchmarks, inspection and the HTML report,
hyper-parameter sweeps."""
