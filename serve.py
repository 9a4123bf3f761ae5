"""Serve a trained model locally: `python serve.py model=<run dir | .ckpt | exported dir>`.

Binds 127.0.0.1:8000 (host=, port=): POST /predict, POST /explain, GET /prototypes, GET /health,
and a page at / where a person types a text and sees its explanation and every prototype.
"""

from protolm.cli import entry_point

main = entry_point("serve", "protolm.cli.serve:serve_command")

if __name__ == "__main__":
    main()
