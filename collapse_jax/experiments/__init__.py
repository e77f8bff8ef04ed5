"""The experiment commands of the iterative-training recursions (seeds 003 and 004), one module per command.

Each module declares a frozen config dataclass (its fields' metadata generate the command's flags and ``--help``
through :func:`collapse_jax.cli_options.add_config`), runs the experiment into a run folder
(:class:`collapse_jax.results.RunFolder`: config, labelled arrays, figure, manifest) and draws its figure beside it:

* :mod:`.validate_cmd`: ``validate``, theory vs Monte Carlo for every checked statement (-> docs/validation.md);
* :mod:`.fig2`, :mod:`.fig3`: ``recursions-fig2`` / ``recursions-fig3``, seed 003 Figures 2 and 3 (multinomial);
* :mod:`.c2`: ``recursions-c2``, seed 003 Figure 6 / Appendix C.2 for four model classes;
* :mod:`.linreg`, :mod:`.w2`: ``recursions-linreg`` / ``recursions-w2``, seed 004's linear regression and Gaussian
  W2 experiments.
* :mod:`.gaussian_fit`: ``recursions-gaussian-fit``, the refitted Gaussian's exact fit moments in three regimes
  against Monte Carlo.

:mod:`.runs` holds what they share (the subcommand from the config, mean with its confidence band, finishing a run).
"""

# Command modules, in the order ``collapse-jax --help`` lists them (collapse_jax.cli.COMMAND_MODULES includes them).
COMMAND_MODULES = [f"collapse_jax.experiments.{name}" for name in ("validate_cmd", "fig2", "fig3", "c2", "linreg",
                                                                   "w2", "gaussian_fit")]
