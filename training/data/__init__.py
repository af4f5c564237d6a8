"""Corpora: folder-per-artist and Painter by Numbers readers, the Met set (realset), synthetic paintings, training
pairs, and the acquisition conditions every picture is judged under."""
