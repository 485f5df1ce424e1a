r"""ClAM: prototypes trained by associative-memory pattern completion.

    python -m experiments.main --config=configs/clam.py
    python -m experiments.main --config=configs/clam.py:mnist   # MNIST-test
    python -m experiments.main --config=configs/clam.py:quick

The reference setting: z-scored inputs, 20% of each sample's coordinates
masked, 10 steps of size 0.1 (total time 1), beta from {1.1, 1.5, 1.9, 2.4};
only the prototypes are trained, with Adam.
"""

import ml_collections

from configs import default


def get_config(arg=None):
  args = default.parse_arg(arg)
  config = default.get_config()
  config.method = "clam"
  config.data.batch_size = 256
  config.model.encoder = "identity"
  config.objective = ml_collections.ConfigDict(dict(
      beta=1.5,
      alpha=0.1,
      num_steps=10,
      mask_fraction=0.2,
      standardize=True,   # z-score features (the reference setting)
      warmup_steps=0,     # encoder='mlp': autoencoder pre-training steps
      clam_weight=1.0,    # encoder='mlp': weight of ClAM vs reconstruction
  ))
  config.optimizer.update(dict(name="adam", learning_rate=1e-2,
                               schedule="cosine", warmup_steps=0))
  config.train.update(dict(num_steps=1500, checkpoint_every=500,
                           eval_every=500, log_every=50))
  if "mnist" in args:
    # ClAM in the latent space of an MLP autoencoder (DKM's shape), trained
    # end to end after a reconstruction warm-up.
    default.mnist(config, cnn=False)
    config.model.update(dict(encoder="mlp", hidden=(500, 500, 2000),
                             z_dim=10))
    config.objective.update(dict(warmup_steps=6000, clam_weight=1.0,
                                 standardize=False))
    config.optimizer.update(dict(learning_rate=1e-3, schedule="constant"))
    config.train.update(dict(num_steps=7000, checkpoint_every=1000,
                             eval_every=3500))
  if "quick" in args:
    default.quick(config)
  return config
