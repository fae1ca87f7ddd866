"""Skeleton topologies: joint names, bones and named joint indices.

The one place where the joint layouts of the skeleton datasets are written
down (0-based indices throughout). The builders (`ntu`, `nucla`, `sysu3d`,
`hand_gestures`), `preprocessing` and `eleatt_jax.viz` all read them from here.
This module is pure Python: it imports neither NumPy nor matplotlib.

Three layouts:

  * Kinect v2, 25 joints (NTU RGB+D 60/120): `NTU_JOINT_NAMES`, `NTU_BONES`.
  * Kinect v1, 20 joints (N-UCLA, SYSU-3D): `KINECT_V1_JOINT_NAMES`,
    `KINECT_V1_BONES`. The first 20 Kinect v2 joints sit at the same
    positions, so `SPINE`, the shoulders and the hips are the same indices in
    both.
  * The 22-joint hand of DHG-14/28 and SHREC'17: `HAND_JOINT_NAMES`,
    `HAND_BONES`.

>>> skeleton_topology(25)[1][:3]
((0, 1), (1, 20), (20, 2))
>>> NTU_JOINT_NAMES[SPINE], KINECT_V1_JOINT_NAMES[SPINE], HAND_JOINT_NAMES[PALM]
('spine_mid', 'spine', 'palm')
"""

from __future__ import annotations

# Kinect v2, 25 joints: NTU RGB+D and NTU RGB+D 120. Joint order is the
# Kinect for Windows SDK 2.0 `JointType` enumeration, which is the order of the
# joints in NTU's `.skeleton` files (Shahroudy et al., "NTU RGB+D: A Large Scale
# Dataset for 3D Human Activity Analysis", CVPR 2016, Fig. 1 / the dataset's
# README, 1-based there). Bones are those the SDK's BodyBasics sample draws
# (torso, arms with hand tip and thumb, legs); ST-GCN's 'ntu-rgb+d' graph
# (github.com/yysijie/st-gcn, net/utils/graph.py) uses the same 24 edges except
# that it hangs the thumb on the hand tip instead of the hand.
# fmt: off
NTU_JOINT_NAMES = (
    'spine_base', 'spine_mid', 'neck', 'head',                       # 1-4
    'shoulder_left', 'elbow_left', 'wrist_left', 'hand_left',        # 5-8
    'shoulder_right', 'elbow_right', 'wrist_right', 'hand_right',    # 9-12
    'hip_left', 'knee_left', 'ankle_left', 'foot_left',              # 13-16
    'hip_right', 'knee_right', 'ankle_right', 'foot_right',          # 17-20
    'spine_shoulder', 'hand_tip_left', 'thumb_left',                 # 21-23
    'hand_tip_right', 'thumb_right')                                 # 24-25
NTU_BONES = (
    # Torso: spine_base-spine_mid-spine_shoulder-neck-head.
    (0, 1), (1, 20), (20, 2), (2, 3),
    # Left arm: spine_shoulder-shoulder-elbow-wrist-hand-hand_tip; wrist-thumb.
    (20, 4), (4, 5), (5, 6), (6, 7), (7, 21), (6, 22),
    # Right arm.
    (20, 8), (8, 9), (9, 10), (10, 11), (11, 23), (10, 24),
    # Legs: spine_base-hip-knee-ankle-foot.
    (0, 12), (12, 13), (13, 14), (14, 15),
    (0, 16), (16, 17), (17, 18), (18, 19))

# Kinect v1, 20 joints: Northwestern-UCLA Multiview Action3D and SYSU-3D. Joint
# order is the Kinect for Windows SDK 1.x `NUI_SKELETON_POSITION_INDEX`
# enumeration (hip_center, spine, shoulder_center, head, then left arm, right
# arm, left leg, right leg), the order of N-UCLA's per-sample joint lists (Wang
# et al., CVPR 2014) and of SYSU-3D's `sklWorld.mat` (Hu et al., CVPR 2015);
# the first 20 Kinect v2 joints use the same positions. Bones are those the SDK
# 1.x SkeletonBasics sample draws (19 edges).
KINECT_V1_JOINT_NAMES = (
    'hip_center', 'spine', 'shoulder_center', 'head',                # 1-4
    'shoulder_left', 'elbow_left', 'wrist_left', 'hand_left',        # 5-8
    'shoulder_right', 'elbow_right', 'wrist_right', 'hand_right',    # 9-12
    'hip_left', 'knee_left', 'ankle_left', 'foot_left',              # 13-16
    'hip_right', 'knee_right', 'ankle_right', 'foot_right')          # 17-20
KINECT_V1_BONES = (
    (0, 1), (1, 2), (2, 3),                                  # torso, head
    (2, 4), (4, 5), (5, 6), (6, 7),                          # left arm
    (2, 8), (8, 9), (9, 10), (10, 11),                       # right arm
    (0, 12), (12, 13), (13, 14), (14, 15),                   # left leg
    (0, 16), (16, 17), (17, 18), (18, 19))                   # right leg
# fmt: on

# 22-joint hand of DHG-14/28 and SHREC'17 (De Smedt et al., "SHREC'17 Track:
# 3D Hand Gesture Recognition Using a Depth and Skeletal Dataset", 2017):
# wrist, palm, then thumb, index, middle, ring, pinky from base to tip. The
# thumb hangs on the wrist, the fingers on the palm.
HAND_JOINT_NAMES = ('wrist', 'palm') + tuple(
    f'{finger}_{part}'
    for finger in ('thumb', 'index', 'middle', 'ring', 'pinky')
    for part in ('base', 'joint1', 'joint2', 'tip')
)
HAND_BONES = ((0, 1), (0, 2), (2, 3), (3, 4), (4, 5)) + tuple(
    bone
    for first in (6, 10, 14, 18)
    for bone in (
        (1, first),
        (first, first + 1),
        (first + 1, first + 2),
        (first + 2, first + 3),
    )
)

#: Joints per layout.
NTU_NUM_JOINTS = len(NTU_JOINT_NAMES)  # 25
KINECT_V1_NUM_JOINTS = len(KINECT_V1_JOINT_NAMES)  # 20
HAND_NUM_JOINTS = len(HAND_JOINT_NAMES)  # 22

# Named joints, 0-based, the same in Kinect v2 (NTU) and Kinect v1 (N-UCLA,
# SYSU-3D): 2 spine (middle), 5/9 left/right shoulder, 13/17 left/right hip
# (1-based in the datasets' documentation).
#: Spine (middle): the usual translation centre of the body skeletons.
SPINE = 1
LEFT_SHOULDER, RIGHT_SHOULDER = 4, 8
LEFT_HIP, RIGHT_HIP = 12, 16
#: Palm of the 22-joint hand: the usual translation centre of DHG / SHREC'17.
PALM = 1

_TOPOLOGIES = {
    NTU_NUM_JOINTS: (NTU_JOINT_NAMES, NTU_BONES),
    KINECT_V1_NUM_JOINTS: (KINECT_V1_JOINT_NAMES, KINECT_V1_BONES),
    HAND_NUM_JOINTS: (HAND_JOINT_NAMES, HAND_BONES),
}


def skeleton_topology(
    num_joints: int,
) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
  """(joint names, bones) for 25 (NTU, Kinect v2), 20 (Kinect v1) or 22 joints.

  Raises:
    ValueError: for another joint count (pass ``bones=`` to the plots then).
  """
  if num_joints not in _TOPOLOGIES:
    raise ValueError(
        f'no built-in skeleton topology for {num_joints} joints (known: 25 '
        'Kinect v2 / NTU, 20 Kinect v1 / N-UCLA / SYSU-3D, 22 hand / DHG / '
        "SHREC'17); pass bones=[(i, j), ...] and joint_names=..."
    )
  return _TOPOLOGIES[num_joints]
