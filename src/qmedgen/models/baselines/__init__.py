"""Baseline generators and discriminators the paper compares MediQ-GAN against, built for the shared harness.

* :mod:`~qmedgen.models.baselines.dcgan` - conditional DCGAN generator/discriminator (Radford et al. 2016); the
  generator is also the WGAN-GP baseline's generator (its critic is :class:`qmedgen.models.critic.ConditionalCritic`).
* :mod:`~qmedgen.models.baselines.patch_qgan` - the patch quantum GAN generator of Huang et al. (2021).
* :mod:`~qmedgen.models.baselines.mosaiq` - MosaiQ's PCA-space quantum generator (Silver et al., ICCV 2023).
* :mod:`~qmedgen.models.baselines.mlp` - the small fully connected discriminator of the quantum GANs.
* :mod:`~qmedgen.models.baselines.fastgan` - a lightweight FastGAN-style GAN (Liu et al., ICLR 2021).

The training side lives in :mod:`qmedgen.train.baselines`; docs/baselines.md lists what is included and what not.
"""
