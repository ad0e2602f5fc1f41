"""Denoising reconstruction: a residual MONAI UNet trained with L1 + PatchGAN loss on low-dose CT and noisy MR.

Modules: ``model`` (network and scaling), ``pipeline`` (series in, "AI denoised" derived
series out), ``train`` (reference weights), ``evaluation`` (PSNR/SSIM vs classical filters).
"""

from __future__ import annotations
