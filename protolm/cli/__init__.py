"""The command line: ``protolm <command>`` (:mod:`.app`) and ``python run.py`` (``protolm train``).

:mod:`.runner` holds what every command shares (one-line errors, exit codes, multirun safety);
:mod:`.tool` what the commands that use a trained model share (the model, its data, a fresh output
directory); :mod:`.help` answers ``--help``; one module per command holds it. Library code never
imports this package.
"""
