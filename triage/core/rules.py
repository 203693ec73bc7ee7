"""Everything the pure steps read, loaded once (and again on reload).

Loading reads the rule files; deciding never does: `Rules` is a value handed to
`analyse`, `decide` and `render`, in this process and in every parsing worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from triage.config import Config, shipped_rules
from triage.core import contacts as contacts_mod
from triage.core import evidence as evidence_mod
from triage.core import priority as priority_mod
from triage.core import sla as sla_mod
from triage.core.filters import FilterSet
from triage.core.templates import Templates


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything the pure steps read, loaded once (and again on reload)."""

    config: Config
    filters: FilterSet
    vocabulary: priority_mod.Vocabulary
    policy: sla_mod.Policy
    directory: contacts_mod.Directory
    templates: Templates
    evidence: evidence_mod.Vocabulary
    # every policy in the SLA folder by name, `policy` among them: a ticket keeps the one it
    # was opened under when the configured one changes (a paused clock runs again on it)
    policies: Mapping[str, sla_mod.Policy]

    @classmethod
    def load(cls, config: Config, contacts: tuple = ()) -> Rules:
        policies = sla_mod.load_policies(config.sla_dir)
        if config.policy not in policies:
            raise sla_mod.SlaError(
                f"{config.path}: [sla.policy] {config.policy!r} is not a policy; "
                f"fix: use one of {sorted(policies)}"
            )
        policy = policies[config.policy]
        if config.plan is not None and config.plan not in policy.plans:
            known = sorted(p for p in policy.plans if p is not None) or ["(none: remove plan)"]
            raise sla_mod.SlaError(
                f"{config.path}: [sla.plan] {config.plan!r} is not a plan of {policy.name}; "
                f"fix: use one of {known}"
            )
        if config.unknown_ceiling is not None:
            try:
                policy.rank_of(config.unknown_ceiling)
            except sla_mod.SlaError:
                raise sla_mod.SlaError(
                    f"{config.path}: [contacts.unknown_ceiling] {config.unknown_ceiling!r} is not "
                    f"a priority of {policy.name}; fix: use one of "
                    f"{', '.join(policy.labels.values())}, or remove the key to turn the ceiling off"
                ) from None
        for queue in config.queues:
            if queue.plan is not None and queue.plan not in policy.plans:
                raise sla_mod.SlaError(
                    f"{config.path}: [queue {queue.name}] plan {queue.plan!r} is not a plan of "
                    f"{policy.name}; fix: use one of {sorted(p for p in policy.plans if p)}"
                )
            if queue.priority is not None:
                try:
                    policy.rank_of(queue.priority)
                except sla_mod.SlaError as exc:
                    raise sla_mod.SlaError(
                        f"{config.path}: [queue {queue.name}] priority: {exc}"
                    ) from None
        return cls(
            config=config,
            filters=FilterSet.from_toml(
                config.filters_file, config.own_domains, config.ticket_prefix
            ),
            vocabulary=priority_mod.Vocabulary.from_toml(config.priority_file),
            policy=policy,
            directory=contacts_mod.Directory.build(
                contacts, fuzzy_threshold=config.fuzzy_threshold
            ),
            templates=Templates.load(config.rules_dir / "templates"),
            evidence=evidence_mod.Vocabulary.from_toml(evidence_file(config)),
            policies=policies,
        )


def evidence_file(config: Config) -> Path:
    """The rules folder's evidence.toml; a folder copied before it existed uses the shipped one."""
    own = config.rules_dir / "evidence.toml"
    return own if own.is_file() else shipped_rules() / "evidence.toml"
