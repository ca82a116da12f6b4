rule paper:
    input:
        unpack(paper_inputs),
    output:
        PAPER,
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
