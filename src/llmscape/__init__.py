"""llmscape: loss landscapes of large language models.

The library behind the Snakemake workflow; it never imports snakemake.
"""

__version__ = "0.1.0"
