"""What only the book uses: claim verdicts and the status page, the book's pages, stored results, and each
chapter's figures, tables and verdict rules.

The science modules of :mod:`star` (NQM, stability, optimizers, PES, meta-training, tasks, data) never
import from here (``tests/test_book_package.py`` checks it); the chapters do:

* :mod:`star.book.claims` — the paper's claims and the budgets of the paper and of a chapter's evidence;
* :mod:`star.book.verdicts` — checks (effects with intervals) and the one rule that turns them into a verdict;
* :mod:`star.book.records` — what a chapter records about a claim or a finding, and reading it back;
* :mod:`star.book.status` — the status page and the introduction's summary, drawn from the records
  (:mod:`star.book.verdict_html`: one verdict as a chapter shows it);
* :mod:`star.book.status_numbers` — the status page's numbers that come from stored runs, recomputed without
  executing a chapter (``tests/test_status_numbers.py`` compares them with a snapshot);
* :mod:`star.book.pages` — the book's root folder, its pages (``_toc.yml``) and their titles;
* :mod:`star.book.files` — stored results under ``results/`` (:func:`~star.book.files.stored_run`), found in a
  checkout or fetched on Colab;
* :mod:`star.book.grid_results` — the stored runs of a grid of meta-training runs read back, and the curves and
  objectives the chapters compute from them;
* :mod:`star.book.devices` — which accelerators JAX sees;
* :mod:`star.book.tables` — HTML tables that fit the page;
* :mod:`star.book.labels` — the one map from the package's ids to the words a page uses;
* :mod:`star.book.stats` — effects with confidence intervals, for the verdicts' checks;
* :mod:`star.book.ood_results` — the stored out-of-distribution suite condensed per task and optimizer;
  the chapter's figures, tables, findings in prose, verdict rule and controls are
  :mod:`star.book.ood_figures`, :mod:`star.book.ood_tables`, :mod:`star.book.ood_findings`,
  :mod:`star.book.ood_verdict` and :mod:`star.book.ood_controls`;
* :mod:`star.book.figures` — the rules every figure must satisfy (axis labels, legends, distinguishable series,
  no ids), measured when a chapter shows a figure and carried in its PNG for ``tests/test_browser.py``;
* one module per chapter, named after it (:mod:`star.book.nqm_experiments`, :mod:`star.book.star_optimizer`):
  the chapter's figures (``plot_*`` functions returning a matplotlib figure), tables, and the rules of the
  verdicts it records (``*_checks`` functions, each a list of :class:`star.book.verdicts.Check` — effects with
  confidence intervals — that the tests feed evidence to flip).
  A chapter with more than a module's worth splits by concept under its name: ``in_distribution_verdicts``,
  ``in_distribution_figures``, ``in_distribution_tables``, ``in_distribution_long`` (the 2000-outer-step grid);
  the appendix proofs (``book/proofs.ipynb``) into ``proofs_nqm`` (the NQM's meta-loss: closed form against Monte
  Carlo, Lemmas 4–5), ``proofs_trials`` (random instances), ``proofs_regions`` (stability regions, cancellation,
  momentum), ``proofs_errata`` and ``proofs_verdicts``; why PES breaks STAR (``book/pes_breaks_star.ipynb``) into
  ``pes_mechanism`` (the breakdown's measurements), ``pes_n_runs`` (more inner problems) and ``pes_remedies``.

A new chapter adds its own module here. Its figure cells call a ``plot_*`` function (or ``plt.subplots()``);
``tests/test_browser.py`` counts those cells and fails a page that shows fewer images.
"""

from star.book import figures as _figures

_figures.install()  # in a notebook kernel: every figure shown carries its measured facts (a no-op elsewhere)
