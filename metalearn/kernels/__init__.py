"""Fast paths beside the textbook models: same functions, faster kernels.

Each module here computes exactly what a layer sequence of :mod:`metalearn.models` computes
(tested against it in float64, gradients of first and second order included) and is entered
through one explicit switch of the model that uses it:

- :mod:`metalearn.kernels.cpu_conv`: Conv4's first block (3x3 conv, batch norm, ReLU, 2x2
  max-pool) as one chunked matrix product on channels-last CPU tensors
  (``Conv4(fast_cpu=...)``).
"""
