"""Learned image compression with a trained autoencoder: quantised latent codes, range-coded.

`prior` holds each latent's training distribution (saved in the model bundle), `codec` turns
codes into bytes and back, `container` is the `.aez` file format, `folder` the commands.
"""
