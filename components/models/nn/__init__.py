"""What the model families share, one module each: masked linear layers (MADE,
PixelCNN: ``masked``), the Gaussian-latent model (VAE, IWAE: ``gaussian_latent``),
annealed importance sampling for energy models (``ais``), rows and draws
(``rows``), causal dilated convolutions over sequences (WaveNet: ``causal``).
Import each from its module: a family depends on what it uses."""
