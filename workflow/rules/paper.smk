# The write-up (src/llmscape/claims.py, paper.py, explorer.py): the claims table, then the paper with its
# explorer and provenance pages.


include: "paper_common.smk"


rule claims:
    input:
        unpack(claims_inputs),
    output:
        report(
            CLAIMS,
            caption="../report/claims.rst",
            category="Claims",
        ),
    log:
        f"{R}/logs/claims.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        config=config,
    script:
        "../scripts/claims.py"


rule paper:
    input:
        unpack(paper_inputs),
    output:
        html=PAPER,
        explorer=EXPLORER,
        provenance=PROVENANCE,
    log:
        f"{R}/logs/paper.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        config=config,
    script:
        "../scripts/paper.py"
