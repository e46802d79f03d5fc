"""Stage 4, the learner: Nature DQN, the TD update (torch.compile'd or captured in a CUDA graph),
target sync and batched epsilon-greedy acting. Takes batches as tuples: never imports replay."""

from fastdqn.learn.learner import Learner, apex_epsilon, epsilon_at, epsilon_greedy, td_loss, td_target, to_device
from fastdqn.learn.model import NatureDQN

__all__ = ["Learner", "NatureDQN", "apex_epsilon", "epsilon_at", "epsilon_greedy", "td_loss", "td_target", "to_device"]
