"""The cohort report: a self-contained folder (index.html + images + plot data) a person opens in a browser."""
