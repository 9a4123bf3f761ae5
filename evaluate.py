"""Faithfulness of a trained model's explanations: `python evaluate.py ckpt_path=PATH split=test`."""

from protolm.cli import entry_point

main = entry_point("evaluate", "protolm.cli.evaluate:evaluate_command")

if __name__ == "__main__":
    main()
