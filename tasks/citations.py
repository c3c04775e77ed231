"""BibTeX of the papers the built-in tasks follow (each task's card cites its own)."""

GROKKED = """@inproceedings{wang2024grokked,
  title     = {Grokked Transformers are Implicit Reasoners: A Mechanistic Journey to the Edge of Generalization},
  author    = {Wang, Boshi and Yue, Xiang and Su, Yu and Sun, Huan},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2024},
  eprint    = {2405.15071},
  archivePrefix = {arXiv}
}"""

LOOP_THINK_GENERALIZE = """@misc{kohli2026loop,
  title     = {Loop, Think, \\& Generalize: Implicit Reasoning in Recurrent-Depth Transformers},
  author    = {Kohli and others},
  year      = {2026},
  eprint    = {2604.07822},
  archivePrefix = {arXiv}
}"""

LATENT_THOUGHTS = """@inproceedings{saunshi2025reasoning,
  title     = {Reasoning with Latent Thoughts: On the Power of Looped Transformers},
  author    = {Saunshi, Nikunj and Dikkala, Nishanth and Li, Zhiyuan and Kumar, Sanjiv and Reddi, Sashank J.},
  booktitle = {International Conference on Learning Representations},
  year      = {2025},
  eprint    = {2502.17416},
  archivePrefix = {arXiv}
}"""

SANFORD = """@inproceedings{sanford2024transformers,
  title     = {Transformers, Parallel Computation, and Logarithmic Depth},
  author    = {Sanford, Clayton and Hsu, Daniel and Telgarsky, Matus},
  booktitle = {International Conference on Machine Learning},
  year      = {2024},
  eprint    = {2402.09268},
  archivePrefix = {arXiv}
}"""
