"""``--track``: the run's scalars and videos to Weights & Biases, as CleanRL's ``--track`` does.

An optional extra (``pip install "fastdqn[wandb]"``). The same scalars as TensorBoard go to W&B
against ``global_step`` (agent steps); --capture-video files go there as they are finished.
``WANDB_MODE=offline`` keeps everything in the run directory (``wandb sync`` uploads it later).
"""

from __future__ import annotations

import os


class Tracker:
    def __init__(self, *, project: str, entity: str | None, name: str, config: dict, out_dir: str,
                 resume: bool = False):
        try:
            import wandb
        except ImportError:
            raise ValueError("--track: expected the wandb extra to be installed: pip install \"fastdqn[wandb]\"") \
                from None
        self._wandb = wandb
        # A resumed run continues the same W&B run (its id is kept in the run directory).
        id_file = os.path.join(out_dir, "wandb_run_id")
        run_id = open(id_file).read().strip() if resume and os.path.isfile(id_file) else None
        self.run = wandb.init(project=project, entity=entity, name=name, config=config, dir=out_dir, id=run_id,
                              resume="allow" if run_id else None, reinit="create_new")
        with open(id_file, "w") as f:
            f.write(self.run.id + "\n")
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")

    def log(self, scalars: dict, step: int) -> None:
        self.run.log({**scalars, "global_step": step})

    def video(self, path: str, step: int) -> None:
        self.run.log({"videos": self._wandb.Video(path, format="mp4"), "global_step": step})

    def finish(self) -> None:
        self.run.finish()
