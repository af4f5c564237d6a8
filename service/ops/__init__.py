"""Operations: the commands and procedures around a running deployment — model upgrade while serving, backup and
restore, bulk enrolment (`python -m service export|import|enrol|upgrade`) and the first-run message."""
