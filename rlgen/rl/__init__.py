"""Reinforcement learning: tabular Q-learning, DQN and REINFORCE on gymnasium environments."""
