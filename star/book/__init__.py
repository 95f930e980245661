"""What only the book uses: claim verdicts and the status page, the book's pages, stored results, figures.

The science modules of :mod:`star` (NQM, stability, optimizers, PES, meta-training, tasks, data) never
import from here (``tests/test_book_package.py`` checks it); the chapters do:

* :mod:`star.book.claims` — the paper's claims, the verdict a chapter records, the status table;
* :mod:`star.book.verdicts` — each claim's rule: the checks that turn a chapter's evidence into a verdict;
* :mod:`star.book.pages` — the book's root folder, its pages (``_toc.yml``) and their titles;
* :mod:`star.book.files` — stored results under ``results/``, found in a checkout or fetched on Colab;
* :mod:`star.book.devices` — which accelerators JAX sees;
* :mod:`star.book.tables` — HTML tables that fit the page;
* :mod:`star.book.figures` — the chapters' figures, one module per chapter.
"""
