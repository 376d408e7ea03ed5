"""The model catalogue: one module per family, each with ``SPECS``, a list of
``kapps.registry.ModelSpec``. ``kapps.registry`` registers every module found here; a new
family needs only a new module. Plain data: nothing here imports TensorFlow."""
