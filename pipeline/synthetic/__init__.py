"""The synthetic reasoning world (docs/design.md): procedural word problems and a reference teacher.

- :mod:`.world`: :class:`WorldConfig`, :func:`generate_problems`, :func:`generate_questions`,
  :func:`problem_from_question_row` and the splits.
- :mod:`.teacher`: :class:`ReferenceTeacher`, :class:`NoiseConfig`, :data:`PERSPECTIVES`.
- :mod:`.run` / ``python -m pipeline.synthetic``: write question and rationale shards.
"""

from .perspectives import PERSPECTIVES
from .teacher import NOISE_KINDS, TEACHER_NAME, NoiseConfig, ReferenceTeacher, TeacherOutput
from .world import (
    SOURCE,
    SPLITS,
    TASK,
    Problem,
    Step,
    WorldConfig,
    execute,
    generate_problems,
    generate_questions,
    iter_problems,
    make_problem,
    problem_from_question_row,
    question_row,
)

__all__ = [
    "NOISE_KINDS",
    "PERSPECTIVES",
    "SOURCE",
    "SPLITS",
    "TASK",
    "TEACHER_NAME",
    "NoiseConfig",
    "Problem",
    "ReferenceTeacher",
    "Step",
    "TeacherOutput",
    "WorldConfig",
    "execute",
    "generate_problems",
    "generate_questions",
    "iter_problems",
    "make_problem",
    "problem_from_question_row",
    "question_row",
]
