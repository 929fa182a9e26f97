"""rlgen.gen"""
