"""Convert the configured model source into results/<model>/model (safetensors + manifest)."""

import logging
from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.models import prepare_model

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main():
    m = snakemake.params.model
    manifest = prepare_model(m["source"], snakemake.output[0], m["dtype"], m["trust_remote_code"])
    logging.getLogger("llmscape").info("prepared %s", manifest)


run_job(main, snakemake.log[0], snakemake.threads)
