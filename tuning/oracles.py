"""Search strategies as keras-tuner oracles: the oracle decides, the tuner runs.

`GeneticOracle` (a steady-state genetic algorithm) and `ParticleSwarmOracle`
(particle-swarm optimization) subclass `keras_tuner.Oracle` and only implement
`populate_space`, so they work wherever keras-tuner's own oracles do: with any
`keras_tuner.Tuner`, in keras-tuner's distributed mode, and across a resumed search
(their state is part of `oracle.json`).

Both search in the unit cube: every hyperparameter maps to `[0, 1)` through its own
`value_to_prob` / `prob_to_value`, so integer, float (linear or log), choice and
boolean parameters are handled alike, and conditional parameters keep a (dormant)
coordinate while inactive. Every random draw comes from
`numpy.random.default_rng([seed, trial_number, attempt])`, so a search with a seed
proposes the same trials on every run.

`with_time_budget(oracle_class)` adds a wall-clock budget (`max_time` seconds,
carried across resumes) to any oracle class, keras-tuner's included.
"""

import json
import time

import keras_tuner
import numpy as np

from zoo.checks import check, is_non_negative_int, is_number, is_positive_int
from zoo.fileio import write_text


def _atomic_state_writes():
    """Makes keras-tuner write its state files (oracle.json, trial.json, ...) atomically.

    keras-tuner 1.4 writes each state file in place through one function,
    `keras_tuner.src.utils.save_json`; a process killed during that write leaves a
    truncated file, and the project can no longer be resumed ("Expecting value: line 1
    column 1", seen when a test SIGKILLed a search). Its public API has no hook for the
    writer, so that one function is replaced here by one that writes a temporary file
    beside the target and renames it over the target (`os.replace`, atomic on POSIX):
    a reader sees the old or the new file, never half of one. Same signature and the
    same bytes; paths that are not local files keep keras-tuner's writer.
    """
    from keras_tuner.src import utils

    original = getattr(utils.save_json, "__wrapped__", utils.save_json)

    def save_json(path, obj):
        path = str(path)
        if "://" in path:  # remote storage (gs://, ...): keras-tuner's own writer
            return original(path, obj)
        text = json.dumps(obj)
        write_text(path, text, sync=True)
        return text

    save_json.__wrapped__ = original
    utils.save_json = save_json


_atomic_state_writes()

_RUNNING = "RUNNING"
_STOPPED = "STOPPED"
_COMPLETED = "COMPLETED"
_TOP = 1.0 - 1e-9  # `prob_to_value` expects probabilities in [0, 1)
_MAX_COLLISIONS = 20  # draws before a neighbourhood counts as exhausted


def _key(values):
    return json.dumps(values, sort_keys=True, default=str)


def tried_values(oracle):
    """Keys of the hyperparameter values of every trial the oracle has created."""
    return {_key(t.hyperparameters.values) for t in oracle.trials.values()}


def random_values(oracle, rng):
    """Random values for the oracle's space (active parameters only)."""
    hps = keras_tuner.HyperParameters()
    for hp in oracle.hyperparameters.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = hp.prob_to_value(float(rng.uniform(0.0, _TOP)))
    return hps.values


class _UnitCubeOracle(keras_tuner.Oracle):
    """Shared machinery: vectors in [0, 1)^d <-> hyperparameter values, scores."""

    def __init__(self, objective=None, max_trials=20, seed=None, hyperparameters=None,
                 allow_new_entries=True, tune_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3):
        check("max_trials", max_trials, is_positive_int(max_trials), "a positive int")
        check("seed", seed, seed is None or is_non_negative_int(seed),
              "a non-negative int or None")
        max_trials = int(max_trials)
        seed = None if seed is None else int(seed)
        super().__init__(
            objective=objective,
            max_trials=max_trials,
            hyperparameters=hyperparameters,
            allow_new_entries=allow_new_entries,
            tune_new_entries=tune_new_entries,
            seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        if seed is not None:
            self.seed = seed  # keras-tuner replaces a seed of 0 with a random one
        # trial_id -> {hyperparameter name: coordinate in [0, 1)}
        self.positions = {}

    def _rng(self, number, attempt=0):
        return np.random.default_rng([int(self.seed), int(number), int(attempt)])

    def _names(self):
        return [hp.name for hp in self.hyperparameters.space]

    def _random_position(self, rng):
        return {name: float(rng.uniform(0.0, _TOP)) for name in self._names()}

    def _values(self, position, rng):
        """Hyperparameter values of a position (only active parameters get values)."""
        hps = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                prob = position.get(hp.name)
                if prob is None:  # a parameter that appeared after this position
                    prob = float(rng.uniform(0.0, _TOP))
                    position[hp.name] = prob
                hps.values[hp.name] = hp.prob_to_value(float(np.clip(prob, 0.0, _TOP)))
        return hps.values

    def _position_of(self, trial):
        """A trial's coordinates: the proposed ones, or those of its values."""
        if trial.trial_id in self.positions:
            return dict(self.positions[trial.trial_id])
        position = {}
        for hp in self.hyperparameters.space:
            if hp.name in trial.hyperparameters.values:
                position[hp.name] = float(hp.value_to_prob(trial.hyperparameters.values[hp.name]))
        return position

    def _completed(self):
        return [t for t in self.trials.values()
                if t.status == _COMPLETED and t.score is not None and np.isfinite(t.score)]

    def _better(self, a, b):
        return a > b if self.objective.direction == "max" else a < b

    def _sorted(self, trials):
        return sorted(trials, key=lambda t: t.score, reverse=self.objective.direction == "max")

    def _propose(self, trial_id, number, make_position):
        """Draws positions until their values are new; STOPPED when none is.

        Args:
            trial_id, number: the trial's id and its number (seeds the draws).
            make_position: `make_position(rng, attempt)` returns `(position, extra)`:
                a candidate position and what the strategy computed with it (PSO's
                velocity; `None` for the genetic algorithm).

        Returns:
            `(response, extra)`: the oracle's response for the trial, and the `extra`
            of the last `make_position` call (the accepted candidate, or the last one
            tried before falling back to random points).
        """
        tried = tried_values(self)
        extra = None
        for attempt in range(_MAX_COLLISIONS + 1):
            rng = self._rng(number, attempt)
            position, extra = make_position(rng, attempt)
            position = {k: float(np.clip(v, 0.0, _TOP)) for k, v in position.items()}
            values = self._values(position, rng)
            if _key(values) not in tried:
                self.positions[trial_id] = position
                return {"status": _RUNNING, "values": values}, extra
        # The neighbourhood is exhausted: fall back to random points.
        for attempt in range(_MAX_COLLISIONS + 1):
            rng = self._rng(number, 1000 + attempt)
            position = self._random_position(rng)
            values = self._values(position, rng)
            if _key(values) not in tried:
                self.positions[trial_id] = position
                return {"status": _RUNNING, "values": values}, extra
        return {"status": _STOPPED, "values": None}, extra

    def get_state(self):
        state = super().get_state()
        state["positions"] = self.positions
        return state

    def set_state(self, state):
        super().set_state(state)
        self.positions = {k: dict(v) for k, v in state.get("positions", {}).items()}


class GeneticOracle(_UnitCubeOracle):
    """A steady-state genetic algorithm over the search space.

    The first `population_size` trials are random (generation 0). Every later trial
    is a child of two parents picked by tournament among the best
    `population_size` completed trials: uniform crossover of their coordinates,
    then each coordinate mutates with probability `mutation_rate` (a Gaussian step
    of `mutation_scale` in the unit cube). Children are proposed as soon as a worker
    asks, so the algorithm never waits for a generation to finish (which keeps
    distributed workers busy).

    Args:
        objective, max_trials, seed, hyperparameters, allow_new_entries,
        tune_new_entries, max_retries_per_trial, max_consecutive_failed_trials:
            as for `keras_tuner.oracles.RandomSearchOracle`. `max_trials` defaults
            to `20`.
        population_size: int >= 2, size of the random first generation and of the
            breeding pool. Defaults to `8`.
        mutation_rate: float in [0, 1], per-coordinate mutation probability.
            Defaults to `0.2`.
        mutation_scale: float > 0, standard deviation of a mutation in the unit
            cube. Defaults to `0.15`.
        crossover_rate: float in [0, 1], probability that a child mixes two parents
            (otherwise it copies the first). Defaults to `0.9`.
        tournament_size: int >= 1, candidates per parent selection. Defaults to `2`.
    """

    def __init__(self, objective=None, max_trials=20, population_size=8, mutation_rate=0.2,
                 mutation_scale=0.15, crossover_rate=0.9, tournament_size=2, seed=None,
                 hyperparameters=None, allow_new_entries=True, tune_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3):
        check("population_size", population_size,
              is_positive_int(population_size) and population_size >= 2, "an int >= 2")
        for name, value in (("mutation_rate", mutation_rate),
                            ("crossover_rate", crossover_rate)):
            check(name, value, is_number(value) and 0 <= value <= 1, "a float in [0, 1]")
        check("mutation_scale", mutation_scale, is_number(mutation_scale) and mutation_scale > 0,
              "a positive float")
        check("tournament_size", tournament_size, is_positive_int(tournament_size),
              "a positive int")
        super().__init__(objective=objective, max_trials=max_trials, seed=seed,
                         hyperparameters=hyperparameters,
                         allow_new_entries=allow_new_entries,
                         tune_new_entries=tune_new_entries,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        self.population_size = int(population_size)
        self.mutation_rate = float(mutation_rate)
        self.mutation_scale = float(mutation_scale)
        self.crossover_rate = float(crossover_rate)
        self.tournament_size = int(tournament_size)

    def _tournament(self, pool, rng):
        picks = rng.choice(len(pool), size=min(self.tournament_size, len(pool)), replace=False)
        best = pool[picks[0]]
        for index in picks[1:]:
            if self._better(pool[index].score, best.score):
                best = pool[index]
        return best

    def populate_space(self, trial_id):
        number = int(trial_id)
        completed = self._completed()
        if number < self.population_size or len(completed) < 2:
            response, _ = self._propose(
                trial_id, number, lambda rng, attempt: (self._random_position(rng), None))
            return response
        pool = self._sorted(completed)[: self.population_size]

        def child(rng, attempt):
            first = self._position_of(self._tournament(pool, rng))
            second = self._position_of(self._tournament(pool, rng))
            position = {}
            mix = rng.uniform() < self.crossover_rate
            # Collisions raise the mutation pressure on later attempts.
            rate = min(1.0, self.mutation_rate * (1 + attempt))
            for name in self._names():
                genes = [p[name] for p in (first, second) if name in p]
                if not genes:
                    position[name] = float(rng.uniform(0.0, _TOP))
                    continue
                gene = genes[int(rng.integers(len(genes)))] if mix else genes[0]
                if rng.uniform() < rate:
                    gene = gene + rng.normal(0.0, self.mutation_scale)
                    gene = gene % 1.0  # wrap around: keeps the mutation unbiased
                position[name] = float(gene)
            return position, None

        response, _ = self._propose(trial_id, number, child)
        return response

    def get_state(self):
        state = super().get_state()
        state["genetic"] = dict(
            population_size=self.population_size, mutation_rate=self.mutation_rate,
            mutation_scale=self.mutation_scale, crossover_rate=self.crossover_rate,
            tournament_size=self.tournament_size,
        )
        return state


class ParticleSwarmOracle(_UnitCubeOracle):
    """Particle-swarm optimization (Kennedy & Eberhart 1995) over the search space.

    `swarm_size` particles move in the unit cube. Trial `n` is a move of particle
    `n % swarm_size`: its first position is random; later,
    `v <- inertia * v + cognitive * r1 * (personal_best - x) + social * r2 * (global_best - x)`
    (clipped to `max_velocity`) and `x <- x + v`, reflected at the cube's faces.
    Personal and global bests come from the trials completed so far, so the swarm
    keeps moving while some of its trials still run on other workers.

    Args:
        objective, max_trials, seed, hyperparameters, allow_new_entries,
        tune_new_entries, max_retries_per_trial, max_consecutive_failed_trials:
            as for `keras_tuner.oracles.RandomSearchOracle`. `max_trials` defaults
            to `20`.
        swarm_size: int >= 1, number of particles. Defaults to `6`.
        inertia: float >= 0, velocity kept between moves. Defaults to `0.6`.
        cognitive: float >= 0, pull toward the particle's best. Defaults to `1.5`.
        social: float >= 0, pull toward the swarm's best. Defaults to `1.5`.
        max_velocity: float > 0, largest step per coordinate. Defaults to `0.3`.
    """

    def __init__(self, objective=None, max_trials=20, swarm_size=6, inertia=0.6, cognitive=1.5,
                 social=1.5, max_velocity=0.3, seed=None, hyperparameters=None,
                 allow_new_entries=True, tune_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3):
        check("swarm_size", swarm_size, is_positive_int(swarm_size), "a positive int")
        for name, value in (("inertia", inertia), ("cognitive", cognitive), ("social", social)):
            check(name, value, is_number(value) and value >= 0, "a float >= 0")
        check("max_velocity", max_velocity, is_number(max_velocity) and max_velocity > 0,
              "a positive float")
        super().__init__(objective=objective, max_trials=max_trials, seed=seed,
                         hyperparameters=hyperparameters,
                         allow_new_entries=allow_new_entries,
                         tune_new_entries=tune_new_entries,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        self.swarm_size = int(swarm_size)
        self.inertia = float(inertia)
        self.cognitive = float(cognitive)
        self.social = float(social)
        self.max_velocity = float(max_velocity)
        # trial_id -> velocity that moved the particle to that trial's position
        self.velocities = {}

    def particle(self, trial_id):
        return int(trial_id) % self.swarm_size

    def populate_space(self, trial_id):
        number = int(trial_id)
        particle = number % self.swarm_size
        names = self._names()
        if number < self.swarm_size:
            def first(rng, attempt):
                position = self._random_position(rng)
                velocity = {
                    n: float(rng.uniform(-self.max_velocity, self.max_velocity) / 2)
                    for n in names
                }
                return position, velocity

            response, velocity = self._propose(trial_id, number, first)
            self.velocities[trial_id] = velocity
            return response

        mine = [t for t in self.trials.values() if self.particle(t.trial_id) == particle]
        previous = max(mine, key=lambda t: int(t.trial_id))
        x = self._position_of(previous)
        v = dict(self.velocities.get(previous.trial_id, {}))
        completed = self._completed()
        personal = [t for t in completed if self.particle(t.trial_id) == particle]
        personal_best = self._position_of(self._sorted(personal)[0]) if personal else x
        global_best = self._position_of(self._sorted(completed)[0]) if completed else x

        def move(rng, attempt):
            position, velocity = {}, {}
            for name in names:
                xi = x.get(name)
                if xi is None:
                    xi = float(rng.uniform(0.0, _TOP))
                vi = v.get(name, 0.0)
                pi = personal_best.get(name, xi)
                gi = global_best.get(name, xi)
                vi = (self.inertia * vi
                      + self.cognitive * rng.uniform() * (pi - xi)
                      + self.social * rng.uniform() * (gi - xi))
                if attempt:  # turbulence when the move lands on a tried point
                    vi += rng.normal(0.0, self.max_velocity * attempt / 4)
                vi = float(np.clip(vi, -self.max_velocity, self.max_velocity))
                xi = xi + vi
                if xi < 0.0 or xi >= 1.0:  # reflect at the faces
                    xi = -xi if xi < 0.0 else 2.0 - xi
                    vi = -vi
                position[name] = float(np.clip(xi, 0.0, _TOP))
                velocity[name] = vi
            return position, velocity

        response, velocity = self._propose(trial_id, number, move)
        self.velocities[trial_id] = velocity
        return response

    def get_state(self):
        state = super().get_state()
        state["velocities"] = self.velocities
        state["swarm"] = dict(swarm_size=self.swarm_size, inertia=self.inertia,
                              cognitive=self.cognitive, social=self.social,
                              max_velocity=self.max_velocity)
        return state

    def set_state(self, state):
        super().set_state(state)
        self.velocities = {k: dict(v) for k, v in state.get("velocities", {}).items()}


class UniqueBayesianOptimizationOracle(keras_tuner.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian optimization, without proposing tried values again.

    On spaces of integers and choices, keras-tuner 1.4.8's Gaussian-process oracle
    keeps proposing the point it believes best once it has been tried (measured in
    `benchmarks/tuning_strategies.py`: 7 of 10 trials were the same configuration). A
    repeated proposal is replaced by a random untried point, seeded by the trial number.
    """

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        if response.get("status") != _RUNNING or response.get("values") is None:
            return response
        tried = tried_values(self)
        if _key(response["values"]) not in tried:
            return response
        for attempt in range(_MAX_COLLISIONS + 1):
            rng = np.random.default_rng([int(self.seed), int(trial_id), attempt])
            values = random_values(self, rng)
            if _key(values) not in tried:
                return {"status": _RUNNING, "values": values}
        return {"status": _STOPPED, "values": None}


def with_time_budget(oracle_class):
    """Returns a subclass of `oracle_class` that stops after `max_time` seconds.

    The budget is wall-clock search time, saved in the oracle state so that a resumed
    search continues counting. A running trial is never interrupted: the oracle only
    stops proposing new ones.

    Every job's oracle is made by this function, so it also makes resuming safe against
    a kill at any moment (`reload`).
    """

    class TimeBudgetOracle(oracle_class):
        def __init__(self, *args, max_time=None, **kwargs):
            check("max_time", max_time, max_time is None or (is_number(max_time) and max_time > 0),
                  "a positive number of seconds or None")
            super().__init__(*args, **kwargs)
            self.max_time = max_time
            self._elapsed_before = 0.0
            self._clock = time.monotonic()

        def elapsed(self):
            return self._elapsed_before + time.monotonic() - self._clock

        def populate_space(self, trial_id):
            if self.max_time is not None and self.elapsed() >= self.max_time:
                return {"status": _STOPPED, "values": None}
            return super().populate_space(trial_id)

        def get_state(self):
            state = super().get_state()
            state["search_seconds"] = self.elapsed()
            return state

        def set_state(self, state):
            super().set_state(state)
            self._elapsed_before = float(state.get("search_seconds", 0.0))
            self._clock = time.monotonic()

        def reload(self):
            # keras-tuner's `create_trial` writes a new trial's `trial.json` (status
            # RUNNING) before `oracle.json` lists it among the ongoing trials, and its
            # `reload` retries only the listed ones. A job killed between the two writes
            # left that trial RUNNING, never run, yet counted against `max_trials`
            # (seen once in CI under load). Written here because keras-tuner has no
            # hook for it: retry every RUNNING trial, as keras-tuner does the listed ones.
            super().reload()
            queued = set(self._retry_queue)
            for trial_id in sorted(self.trials, key=str):
                if self.trials[trial_id].status == _RUNNING and trial_id not in queued:
                    self._retry_queue.append(trial_id)

    TimeBudgetOracle.__name__ = f"TimeBudget{oracle_class.__name__}"
    TimeBudgetOracle.__qualname__ = TimeBudgetOracle.__name__
    return TimeBudgetOracle


def with_default_first(oracle_class):
    """Returns a subclass of `oracle_class` whose first trial is the default configuration.

    Every hyperparameter at its default (the hypermodel's defaults: `build_gru`'s, or the
    recipe's where a job sets them), so that a search always measures what it must beat.
    Later trials are the oracle's own. keras-tuner's grid search already starts there;
    Hyperband cannot (its brackets own every trial's values and epochs). Wrap it inside
    `with_time_budget` (`with_time_budget(with_default_first(cls))`) so that a spent
    budget stops the first trial too.
    """

    class DefaultFirstOracle(oracle_class):
        def populate_space(self, trial_id):
            if not self.trials:
                hps = keras_tuner.HyperParameters()
                for hp in self.hyperparameters.space:
                    hps.merge([hp])
                    if hps.is_active(hp):
                        hps.values[hp.name] = hp.default
                return {"status": _RUNNING, "values": hps.values}
            return super().populate_space(trial_id)

    DefaultFirstOracle.__name__ = f"DefaultFirst{oracle_class.__name__}"
    DefaultFirstOracle.__qualname__ = DefaultFirstOracle.__name__
    return DefaultFirstOracle
