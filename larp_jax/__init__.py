"""larp_jax: JAX/Flax reimplementations of LARP, MOSTRA and related music-recommendation systems."""
