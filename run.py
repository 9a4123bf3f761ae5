"""Train proto-lm (or the linear baseline) on a task: `python run.py task=sst2 backbone=roberta-large`.

The same as `protolm train ...`: Hydra composes conf/ (see README.md); multirun sweeps with -m;
`python run.py --help` lists every key with its type, default and meaning.
"""

from protolm.cli.runner import answer_help

if __name__ == "__main__":
    answer_help("config")
    from protolm.cli.train import main

    main()
