"""The atlas: a static, offline web site to browse every unit, latent, class and
explanation of one run (``results/{dataset}/{model}/atlas/index.html``).

Built only from the run's artifacts (rule ``atlas``):

- ``index.html`` — every dissected layer's units and every SAE latent in one sortable,
  filterable table (name, score, p / q-value, stability, flag, exemplar count, and on
  synthetic data the truth and verification columns);
- ``site/units/<group>-<unit>.html`` — exemplar thumbnails with their activation, the
  heat map over each image where the store has spatial maps (and the dataset's boxes),
  the top concepts with their scores, the report snippets behind a report-based name;
- ``site/classes/<k>.html`` — the CBM's concepts and weights for a class, and a seeded
  sample of test images with their explanation bars, predicted vs true class;
- ``site/metrics.html`` — every metrics file and a link to each provenance sidecar.

Thumbnails are written once per shown image (``site/thumbs``) and shared by all pages;
the CSS and JavaScript are the site's own (:mod:`.assets`), nothing is fetched.

Modules: :mod:`.settings` (AtlasParams), :mod:`.collect` (artifacts → tables),
:mod:`.thumbs`, :mod:`.heatmaps`, :mod:`.render` (HTML), :mod:`.build` (the rule's entry).
"""
