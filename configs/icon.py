r"""I-Con's Debiased InfoNCE Clustering.

    python -m experiments.main --config=configs/icon.py
    python -m experiments.main --config=configs/icon.py:mnist   # MNIST-test
    python -m experiments.main --config=configs/icon.py:quick

Supervision: the other augmented view of an image or of one of its 5 nearest
training-set neighbours (in the 28x28 preset half the pairs are two views of
one image), debiased with ``alpha_p``; learned: the cluster
kernel of the softmax cluster head, debiased with ``alpha_q``; Adam, lr 1e-3.
Five cluster heads share the backbone, each trained on its own loss; the one
with the lowest running loss assigns (SCAN's choice, without labels).
"""

import ml_collections

from configs import default


def get_config(arg=None):
  args = default.parse_arg(arg)
  config = default.get_config()
  config.method = "icon"
  config.data.batch_size = 512
  config.model.update(dict(encoder="mlp", hidden=(512, 512),
                           head_hidden=(512,)))
  config.objective = ml_collections.ConfigDict(dict(
      # Supervision from each image's 5 nearest training-set neighbours (in
      # the inputs, mined once; SCAN's pairs) rather than a kNN graph of the
      # batch: digits, seeds 0-2, ACC 0.872 +- 0.070 (batch graph, alphas
      # 0.6) -> see the README's leaderboard (training-set neighbours,
      # alphas 0.2, as the 28x28 preset had).
      neighbors="input",  # input | batch (kNN graph of the batch)
      num_neighbors=5,    # 'input': neighbours mined per example
      knn_k=3,            # 'batch': kNN graph of the batch
      knn_walks=1,
      alpha_p=0.2,
      alpha_q=0.2,
      temperature=1.0,
      # Cluster heads on one backbone; the lowest running loss assigns. The
      # loss has merge-and-split local optima (MNIST-test, one head: seeds
      # 1 and 2 merged two digits, ACC 0.84 / 0.83) that a higher loss
      # gives away (five heads: 0.970 / 0.96, the chosen heads' losses
      # 0.05 below the merged ones').
      num_heads=5,
      # > 0: as many auxiliary heads with this many times num_clusters
      # clusters (IIC's over-clustering), trained on the same pairs.
      overcluster_factor=0,
  ))
  config.optimizer.update(dict(name="adam", learning_rate=1e-3,
                               schedule="cosine", warmup_steps=50))
  config.train.update(dict(num_steps=1500, checkpoint_every=500,
                           eval_every=500, log_every=50))
  if "mnist" in args:
    default.mnist(config)
    config.data.batch_size = 256
    # Half the pairs are two views of one image, half an image and one of
    # its neighbours: the neighbours carry the class across images, the
    # image's own views a pair that is never wrong (on clothes a fifth of
    # the pixels' neighbours are another class; on MNIST-test 6%). Seeds
    # 0-2, ACC with neighbours only -> half and half: MNIST-test 0.973 ->
    # 0.979 +- 0.001, the Fashion-MNIST stand-in 0.636 -> 0.720 +- 0.007.
    config.data.self_pair_share = 0.5
  if "quick" in args:
    default.quick(config)
  return config
