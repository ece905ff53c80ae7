"""The representation a metric scores: the mean of q(z|x) under a trained VAE's encoder."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


def encoder_mean(vae):
    """``representation_fn(observations) -> E_q[z | x]`` as a numpy array (batch, latent_dim).

    Runs the encoder in eval mode without gradients, on the VAE's device. Observations have
    the VAE's example shape, or for images the channels-last shape (H, W, C) that
    disentanglement_lib-style data sets give (e.g. (64, 64, 1) for a VAE on (1, 64, 64)).
    """
    data_shape = tuple(vae.data_shape)
    channels_last = (*data_shape[1:], data_shape[0]) if len(data_shape) == 3 else None

    def representation_fn(observations) -> np.ndarray:
        x = torch.as_tensor(np.asarray(observations, dtype=np.float32), device=vae.device)
        shape = tuple(x.shape[1:])
        if shape != data_shape and shape == channels_last:
            x = x.permute(0, 3, 1, 2)
        elif shape != data_shape:
            raise DataError(f"observations have example shape {shape}, the VAE expects {data_shape}"
                            + (f" (or channels last, {channels_last})" if channels_last else ""))
        was_training = vae.training
        vae.eval()
        try:
            with torch.no_grad():
                z = vae.encode(x).mean
        finally:
            vae.train(was_training)
        return z.detach().cpu().numpy()

    return representation_fn
