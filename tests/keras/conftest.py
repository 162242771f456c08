"""The Keras tests run once per backend, each in its own pytest process (Keras reads ``KERAS_BACKEND`` at
import): ``make test`` runs them on torch (the default, tests/conftest.py), then with ``KERAS_BACKEND=tensorflow``
and ``KERAS_BACKEND=jax``. Here: one intra-op thread for TensorFlow and XLA too, as tests/conftest.py does for
torch (two cores, two xdist workers), set before either is imported."""
import os

BACKEND = os.environ.get("KERAS_BACKEND", "torch")

if BACKEND == "jax":
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
elif BACKEND == "tensorflow":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner on stderr
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
