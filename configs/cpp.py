r"""CPP: MCR^2 clustering of images or of precomputed (e.g. CLIP) features.

    python -m experiments.main --config=configs/cpp.py            # digits
    python -m experiments.main --config=configs/cpp.py:npy \
        --config.data.path=clip_features.npz                      # features
    python -m experiments.main --config=configs/cpp.py:quick

The recipe of Chu et al. (ICLR 2024): feature and cluster heads on a backbone
(frozen pre-trained features: ``npy`` with ``model.encoder='identity'``),
TCR warm-up, then ``-R(Z) + R_c(Z, Gamma) + frobenius_weight/2 ||Gamma||_F^2``
with CPP's membership (5 half-steps, gradient stopped through ``v``).
Reference CIFAR-10 hyperparameters: eta 0.175, eps_sq 0.1, z_dim 128.
"""

import ml_collections

from configs import default


def get_config(arg=None):
  args = default.parse_arg(arg)
  config = default.get_config()
  config.method = "cpp"
  config.data.batch_size = 512
  config.model.update(dict(encoder="mlp", hidden=(512, 512),
                           head_hidden=(512,), z_dim=32))
  config.objective = ml_collections.ConfigDict(dict(
      warmup_steps=300,
      eps_sq=0.1,
      gamma_in=1.0,
      gamma_r=1.0,
      eta=0.175,
      sinkhorn_iters=5,
      differentiation="cpp",
      num_views=2,
      invariance_weight=20.0,
      cluster_invariance_weight=0.0,
      frobenius_weight=0.05,
      init_cluster_head=True,
  ))
  config.optimizer.update(dict(name="adam", learning_rate=1e-3,
                               schedule="cosine", warmup_steps=50))
  config.train.update(dict(num_steps=1200, checkpoint_every=300,
                           eval_every=600, log_every=50))
  if "npy" in args:
    # Frozen features: the heads are the whole model; views differ by noise.
    config.data.name = "npy"
    config.model.encoder = "identity"
    config.model.z_dim = 128
    config.data.augment.noise = 0.05
  if "quick" in args:
    default.quick(config)
    config.objective.warmup_steps = 10
  return config
