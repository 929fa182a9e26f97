"""rlgen.selfsup"""
