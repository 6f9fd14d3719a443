"""The embedded-agent sandbox: environments whose reward mechanism the agent can reach, agents
that do and do not tamper with it, and causal influence diagrams that predict which.

* :mod:`.envs` — the environments (importing it registers ``alignlab/<Name>-v0`` with
  Gymnasium; ``gymnasium.make("alignlab.sandbox.envs:alignlab/RocksDiamonds-v0")`` imports it
  for you), each with an exact tabular model (:mod:`.model`) and its diagrams;
* :mod:`.agents` — Q-learning, SARSA, planners, current-RF optimisation (model-based and
  model-free), state-based reward, the counterfactual oracle, an interruption-indifferent planner;
* :mod:`.cid` — causal influence diagrams and the single-decision incentive criteria;
* :mod:`.verify` — the verification table (``alignlab sandbox verify``);
* :mod:`.render`, :mod:`.rollout` — pictures and episodes.
"""
