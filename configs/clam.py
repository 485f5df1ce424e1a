r"""ClAM: prototypes trained by associative-memory pattern completion.

    python -m experiments.main --config=configs/clam.py
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
  ))
  config.optimizer.update(dict(name="adam", learning_rate=1e-2,
                               schedule="cosine", warmup_steps=0))
  config.train.update(dict(num_steps=1500, checkpoint_every=500,
                           eval_every=500, log_every=50))
  if "quick" in args:
    default.quick(config)
  return config
