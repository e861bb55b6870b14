"""SegAgent's click policy on the canvas world. Launch: ``masklab train --recipe segagent-canvas --out runs/agent``.

Training rows are steps of the simulated annotator's trajectories (:class:`masklab.seg.agent.AgentRows`: clicks on
the largest error region until the random walker's mask reaches IoU 0.95) on world ``world``; the held-out
evaluation rolls the policy out on the first clicks of world ``valid_world`` (NoC@85/90 against the annotator).
Trajectories are walked when a row is first indexed (about 40 ms of random walker per click), so building the task
is instant and the first epoch pays for the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.segagent import SegAgentObjective
from masklab.seg.agent import AgentLayout, AgentRows, ClickPolicy
from masklab.seg.models.vocab import seg_tokenizer
from masklab.train.recipes.base import Task, WorldRecipe, register, seeded

__all__ = ["SegAgentRecipe"]


@dataclass
class SegAgentRecipe(WorldRecipe):
    examples: int = 1000  # training examples (canvas, expression, object): 3 per canvas
    trajectory_steps: int = 4  # rows per example: its first 4 clicks (a shorter trajectory wraps around)
    valid_examples: int = 64  # held-out examples rolled out at the end
    width: int = 64  # policy width (image tokens and transformer)
    layers: int = 2  # transformer blocks over image tokens + expression
    prompt_len: int = 8  # the longest canvas expression is 6 tokens
    train_stop: float = 0.95  # the annotator stops its training trajectories at this IoU
    max_clicks: int = 20  # NoC budget (SegAgent and interactive segmentation: 20)
    stop_at: float = 0.9  # rollouts stop at this IoU (NoC@90 needs nothing past it)
    eval_batches: int = 2  # 64 held-out rollouts

    def __post_init__(self):
        super().__post_init__()
        self.check_positive("examples", "valid_examples", "trajectory_steps", "max_clicks", "width", "layers")
        if not (0 < self.stop_at <= 1 and 0 < self.train_stop <= 1):
            raise ValueError("stop_at and train_stop must be in (0, 1]")
        AgentLayout(self.image_size, max(self.trajectory_steps, 1), self.prompt_len)  # validates the sizes

    def build(self) -> Task:
        tok = seg_tokenizer(max_number=self.image_size)
        layout = AgentLayout(self.image_size, self.trajectory_steps, self.prompt_len)
        train = AgentRows(self.world, self.examples, layout, tok, self.trajectory_steps, self.train_stop)
        valid = AgentRows(self.valid_world, self.valid_examples, layout, tok, 1, self.train_stop)
        with seeded(self.seed):
            policy = ClickPolicy(len(tok), self.prompt_len, self.image_size, self.width, self.layers)
        objective = SegAgentObjective(policy, layout, self.max_clicks, self.stop_at)
        fingerprint = (
            f"agent-{self.image_size}px-w{self.world}x{self.examples}x{self.trajectory_steps}-v{self.valid_world}"
        )
        return self.task(objective, train, valid, fingerprint, tok)


@register("segagent-canvas", "SegAgent: a click policy imitating the simulated annotator, random walker tool, NoC")
def segagent_canvas():
    return SegAgentRecipe()
