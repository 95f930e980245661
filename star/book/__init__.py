"""What only the book uses: claim verdicts and the status page, the book's pages, stored results, and each
chapter's figures, tables and verdict rules.

The science modules of :mod:`star` (NQM, stability, optimizers, PES, meta-training, tasks, data) never
import from here (``tests/test_book_package.py`` checks it); the chapters do:

* :mod:`star.book.claims` — the paper's claims, the verdict a chapter records (computed from named checks by
  one rule), the status table and the introduction's summary;
* :mod:`star.book.pages` — the book's root folder, its pages (``_toc.yml``) and their titles;
* :mod:`star.book.files` — stored results under ``results/`` (:func:`~star.book.files.stored_run`), found in a
  checkout or fetched on Colab;
* :mod:`star.book.devices` — which accelerators JAX sees;
* :mod:`star.book.tables` — HTML tables that fit the page;
* one module per chapter, named after it (:mod:`star.book.proofs`, :mod:`star.book.nqm_experiments`,
  :mod:`star.book.star_optimizer`): the chapter's figures (``plot_*`` functions returning a matplotlib
  figure), tables, and the rules of the verdicts it records (``*_checks`` functions, each a dict of named
  yes/no checks that the tests feed evidence to flip).

A new chapter adds its own module here. Its figure cells call a ``plot_*`` function (or ``plt.subplots()``);
``tests/test_browser.py`` counts those cells and fails a page that shows fewer images.
"""
