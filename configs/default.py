"""Fields every method config shares; method configs override them.

Not a runnable config by itself (it names no method).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.method = ""
  config.seed = 0
  config.num_clusters = 10

  config.data = ml_collections.ConfigDict(dict(
      name="digits",     # digits | mnist | idx | npy | synthetic | tfds:<name>
      path="",           # IDX directory (mnist, idx), or .npy/.npz features
      labels_path="",    # labels .npy next to a features .npy
      split="",          # training split ('' = the source's default, train)
      eval_split="",     # '' = evaluate on the training set (CPP/NMCE)
      data_dir="",       # TFDS data_dir
      image_key="image",
      label_key="label",
      # synthetic data
      kind="gaussian_mixture",
      num_examples=2000,
      dim=16,
      separation=4.0,
      subspace_dim=3,
      noise=0.05,
      batch_size=256,    # global, over all devices and processes
      # Neighbour mining (recipes with objective.neighbors='input'): 'exact'
      # (all pairs), 'approximate' (jax.lax.approx_max_k per tile: faster
      # on TPU, exact on CPU/GPU), 'ivf' (an inverted file of k-means cells
      # on the host: n^1.5, recall ~0.9-0.99) or 'auto' (exact up to
      # 100,000 examples, ivf above).
      neighbor_search="auto",
      # 'all': view 1 is any of the k nearest; 'mutual': only mutual
      # neighbours (j among i's k nearest and i among j's; an example with
      # none keeps its nearest). Mutual pairs are cleaner (cosine on pixels,
      # k=5, pairs sharing the class: MNIST-test 0.941 -> 0.960, digits
      # 0.978 -> 0.989) but fewer, and CPP learned less from them (seed 0
      # ACC: MNIST-test 0.980 -> 0.976, digits 0.960 -> 0.951; MLC digits
      # 0.953 either way): the variety of the pairs counts for more.
      neighbor_pairs="all",
      # With neighbour pairs: the probability that an example is paired with
      # a second view of itself instead of a neighbour. Set by the recipes
      # whose clusters gained from it (see their configs); 0 = always a
      # neighbour.
      self_pair_share=0.0,
      augment=ml_collections.ConfigDict(dict(
          crop_scale=(0.5, 1.0), max_shift=1.0, flip=False, noise=0.0,
          rotation=0.0, brightness=0.0, contrast=0.0)),
  ))

  config.model = ml_collections.ConfigDict(dict(
      encoder="mlp",           # identity | mlp | cnn | resnet18
      hidden=(512, 512),       # mlp widths
      widths=(32, 64, 128),    # cnn channels
      stem_stride=1,           # cnn: stride of the first conv
      stem_kernel=3,           # cnn: size of the first conv
      width=64,                # resnet18 base width
      head_hidden=(512,),
      z_dim=32,
      cap_z_dim=False,         # MLC/CPP: z_dim at most the backbone's outputs
  ))

  config.objective = ml_collections.ConfigDict()

  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam",             # adam | adamw | sgd
      learning_rate=1e-3,
      schedule="cosine",       # constant | cosine
      warmup_steps=0,
      weight_decay=0.0,
      momentum=0.9,            # sgd
      grad_clip=0.0,           # global norm; 0 = off
  ))

  config.train = ml_collections.ConfigDict(dict(
      num_steps=1000,
      checkpoint_every=500,
      eval_every=500,
      log_every=50,
      ema_decay=0.0,           # > 0: evaluate an EMA of the parameters
      # A step whose loss or gradient is NaN/Inf: 'stop' (name the step and
      # loss terms, keep the last good checkpoint, exit non-zero) or 'skip'
      # (leave the parameters as they were and go on; counted in results).
      nonfinite="stop",
  ))

  # Self-labelling (clustering/methods/selflabel.py): the last `steps` of
  # train.num_steps train a linear head on the features with the model's own
  # confident predictions as targets (SCAN/SPICE); 0 = off.
  config.selflabel = ml_collections.ConfigDict(dict(
      steps=0,
      threshold=0.99,        # confidence a target needs (SCAN)
      prior_weight=1.0,      # KL(uniform || mean prediction)
      learning_rate=1e-4,    # constant, after the main schedule (SCAN)
      cutout=0.5,            # images: side of the erased square
      fit_examples=20000,    # rows the head's first fit sees
      head_only=0.2,         # fraction of the steps the backbone is fixed
  ))

  config.eval = ml_collections.ConfigDict(dict(
      batch_size=2048,
      # MLC/CPP: also pick the number of clusters among these by CPP's
      # coding length (reported in results.json; () = off).
      num_clusters_candidates=(),
  ))

  # Multi-host training on JAX's distributed runtime (docs/scaling.md). With
  # a coordinator address every process runs the same command with its own
  # process_id; `auto` lets JAX detect a Cloud TPU VM, Slurm or Open MPI
  # cluster instead. Empty and False: one process.
  config.distributed = ml_collections.ConfigDict(dict(
      coordinator_address="",  # host:port of process 0
      num_processes=0,
      process_id=-1,
      local_device_ids="",     # e.g. "0,1": this process's devices (GPUs)
      auto=False,
  ))
  return config


def parse_arg(arg):
  """``'quick,npy'`` (or ``'quick:npy'``) -> ``{'quick', 'npy'}``.

  big_vision-style config args; ``--config=configs/cpp.py:npy:quick`` hands
  this function ``'npy:quick'``, so both separators are accepted.
  """
  return set(filter(None, (arg or "").replace(":", ",").split(",")))


def quick(config, *, num_steps=30):
  """Shrinks a config so it finishes in seconds on a CPU (for tests)."""
  config.data.batch_size = 64
  config.model.hidden = (64,)
  config.model.widths = (8, 16)
  config.model.width = 8
  config.model.head_hidden = (64,)
  config.model.z_dim = 16
  config.train.num_steps = num_steps
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, 5)
  config.train.checkpoint_every = 10
  config.train.eval_every = num_steps
  config.train.log_every = 5
  return config


def mnist(config, *, cnn=True):
  """The 28x28 grayscale preset (``:mnist``): MNIST's 10,000 test images.

  Reads TFDS ``mnist`` (its test split) when it is prepared on the machine,
  or the MNIST-format IDX files of ``--config.data.path`` (MNIST,
  Fashion-MNIST, KMNIST, ...: any 28x28 grayscale set in that format).

  With ``cnn``: a small CNN whose strided 5x5 stem keeps a CPU step cheap,
  and views that crop, shift and rotate (the rotation hides the slant,
  which otherwise splits 4s and 9s into two mixed halves; a small rotation
  leaves other 28x28 images what they are).
  """
  config.data.update(dict(name="mnist", split="test"))
  if cnn:
    config.data.augment.update(dict(crop_scale=(0.7, 1.0), max_shift=2.0,
                                    rotation=20.0))
    config.model.update(dict(encoder="cnn", widths=(32, 64, 128),
                             stem_stride=2, stem_kernel=5))
  return config
