"""Project a trained model's prototypes onto training examples: `python project.py ckpt_path=PATH mode=replace`."""

from protolm.cli import entry_point

main = entry_point("project", "protolm.cli.project:project_command")

if __name__ == "__main__":
    main()
